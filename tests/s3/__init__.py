"""S3 storage tests against a real SeaweedFS server (a package: see s3kit.py)."""
