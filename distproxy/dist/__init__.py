"""Erlang distribution protocol, sans-IO (bytes in, events/bytes out, ``now`` passed in).

Modules:

- :mod:`.errors`   ProtocolError and its typed subclasses (FrameError, FramingError,
  FrameTooLarge, InvalidNodeName); HandshakeError/WrongCookie live in handshake_messages.
- :mod:`.flags`    DFlag, MANDATORY_25/26, PROXY_MASK, expand_digest, negotiate, describe.
- :mod:`.names`    parse_node_name -> NodeName, validated before anything else.
- :mod:`.framing`  FrameBuffer for {packet,2} then {packet,4}, with a named maximum.
- :mod:`.handshake_messages`  handshake message encoders/parsers and gen_digest.
- :mod:`.handshake`  AcceptorHandshake, InitiatorHandshake, HandshakeRelay (two legs,
  one cookie per leg).
- :mod:`.control`  Op, Kind, OPS table, parse_frame -> ControlMessage, frame builders.
- :mod:`.epmd`     EPMD wire messages, EpmdRegistry, EpmdServerConnection.
"""
