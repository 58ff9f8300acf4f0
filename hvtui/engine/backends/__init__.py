"""Where a repository's objects live: a local folder or an S3-compatible bucket.

Both answer the same small interface (``base.Backend``): list, get (with a byte range), put,
put-if-absent and delete, keyed by slash-separated object names. S3 is imported only when a
repository uses it (boto3 takes a third of a second to import).
"""
