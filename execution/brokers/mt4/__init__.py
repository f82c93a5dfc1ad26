"""The MetaTrader 4 bridge: solodesk's side of the ZeroMQ link to an MT4 terminal, and the
simulator that stands in for the terminal.

:mod:`execution.brokers.mt4.protocol` is the wire protocol, pure functions only (commands,
replies, published prices and bars, MT4 times), in the legacy DWX dialect and in the extended
dialect a ``HELLO`` handshake opens. The client, the simulator and the expert advisor in
``infra/mt4`` all speak it; ``tests/data/mt4/transcript.jsonl`` holds each request next to its
exact reply.
"""
