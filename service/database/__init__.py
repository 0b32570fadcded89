"""The prediction log's database: engine and migrations, tables, dialect differences, the driver-level insert and
the columns' codecs. Every store of the log is built on it; it imports none of them."""
