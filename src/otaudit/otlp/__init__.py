"""OTLP decoding: protobuf and OTLP/JSON into one record model."""
