"""ITCH 5.0 decoding, per-symbol order books, normalized Trade / Quote / Status events.

So far: the Protobuf schema of the normalized events (``normalize.proto``).
"""
