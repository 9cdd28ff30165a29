"""OTLP receivers: HTTP (protobuf and JSON) and gRPC, over one ingest path."""
