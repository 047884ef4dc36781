"""Writing into an S3 bucket: `import`'s destination."""
