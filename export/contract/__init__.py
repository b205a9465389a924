"""The contract that export, serve and the client share: the one part of ``skoots_export`` the
client may import.

Export writes models and the client runs them; what both must agree on lives here and nowhere
else, so the client never reaches into the export package's command line or server:

* `choices` — ``Device`` and ``Backend``, the closed choices both sides name;
* `wire` — the tensors on the wire and the model parameters a config carries;
* `units` — the one table of length units (``um``, ``µm``, ``micrometer``, ...);
* `triples` — ``X,Y,Z`` options, positional or named, parsed the same on both commands;
* `net` — URL and TLS helpers (a proxy-free opener, PEM checks, loopback);
* `errors` — the root of every error a user can cause, on either side;
* `console` — ``--version`` and one-line errors for both command lines;
* `openvino_runtime` — how an exported IR is run, the same in export's check, in the
  served Python-backend model and in the client's embedded runtime.

Modules here import nothing from the rest of ``skoots_export`` (a test keeps it so).
"""

__all__: list[str] = []
