"""One way to a SparkSession: local mode, a cluster master, or Spark Connect.

`spark_session(master=settings.spark_master)` is what the `--engine spark` steps
call. The master string decides the road:

- ``local[N]`` (the default ``local[2]``): an in-process Spark, for tests and laptops;
- ``spark://host:7077``, ``yarn``, ``k8s://...``: a classic cluster master;
- ``sc://host:15002`` (Spark Connect): a remote Spark server, no JVM on this side.

Sessions run in UTC (trade times are UTC; Spark would otherwise render them in
the JVM's zone) with few shuffle partitions when local (small tests stay fast).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from engine.errors import SourceUnavailable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
SPARK_CONNECT_SCHEME = "sc://"
MAX_RESULT_SIZE = "0"  # spark.driver.maxResultSize: no cap but the driver's memory


def spark_session(
    *, master: str = DEFAULT_MASTER, app_name: str = "ledgerlens", shuffle_partitions: int | None = None
) -> SparkSession:
    """A SparkSession for `master` (see the module docstring); an existing one is reused.

    shuffle_partitions: spark.sql.shuffle.partitions; default 4 in local mode
    (Spark's 200 makes small jobs slow), Spark's own setting on a cluster.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SourceUnavailable("PySpark is not installed; run `make install` (requirements.txt pins pyspark)") from exc
    master = master.strip() or DEFAULT_MASTER
    if master.startswith(SPARK_CONNECT_SCHEME):
        builder = SparkSession.builder.remote(master)
    else:
        builder = SparkSession.builder.master(master).config("spark.ui.enabled", "false").config(
            "spark.ui.showConsoleProgress", "false"
        )
        # The driver collects what the partitions hand back (the Benford rows: about one per
        # trade, over 1 GB, Spark's default cap, at 4M trades): the cap is the driver's memory.
        builder = builder.config("spark.driver.maxResultSize", MAX_RESULT_SIZE)
        if master.startswith("local"):
            # Python workers run this interpreter (its venv: polars, the engine), not the PATH's python3;
            # in-process PySpark reads only the environment variable for that.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            shuffle_partitions = 4 if shuffle_partitions is None else shuffle_partitions
    builder = builder.appName(app_name).config("spark.sql.session.timeZone", "UTC")
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    try:
        return builder.getOrCreate()
    except Exception as exc:  # the JVM's or the server's failure, whatever its type
        raise SourceUnavailable(
            f"could not start Spark at {master!r}: {exc}. Locally Spark needs a JRE (`make system-deps` installs "
            "openjdk-17-jre-headless); for a cluster check LEDGERLENS_SPARK_MASTER"
        ) from exc
