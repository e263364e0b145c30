"""Apache Spark backend: the same evidence (features, Benford, closed loops) on a cluster.

PySpark is imported lazily (it is large and needs a JRE): importing this package
costs nothing until a session is asked for.
"""
