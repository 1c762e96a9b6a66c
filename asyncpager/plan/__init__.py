"""Planners: turn one request into many independent streams.

:mod:`asyncpager.plan.keyspace` holds the pure key-range arithmetic behind S3
key-range shards.
"""
