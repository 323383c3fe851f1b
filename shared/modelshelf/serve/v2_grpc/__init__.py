"""Generated stubs of the Open Inference Protocol's gRPC API (see README.md here to regenerate)."""
