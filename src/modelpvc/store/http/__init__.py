"""The HTTP/1.1 connection, SigV4 signing, S3's XML: how we talk to S3 and the Hub."""
