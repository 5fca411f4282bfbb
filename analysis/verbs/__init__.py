"""One module per analysis verb; importing this package registers them all, in the order
`python -m analysis --help` lists them."""
from analysis.verbs import (table, wins, fid, quadrants, curves, capacity,  # noqa: F401
                            compare, efficiency, attributions, advise)
