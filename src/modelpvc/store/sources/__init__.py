"""Where `mirror` reads objects from: the ObjectSource protocol, S3, a local directory."""
