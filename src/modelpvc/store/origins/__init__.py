"""Where `import` reads a model from: the Origin protocol, the Hugging Face Hub, a local directory."""
