"""The normalized market-data schema (``marketdata.proto``) and its generated code.

Import the messages with ``from normalize.proto import marketdata_pb2``; the package itself
imports nothing so that ``python -m normalize.proto.generate`` works when the generated
module is missing.
"""
