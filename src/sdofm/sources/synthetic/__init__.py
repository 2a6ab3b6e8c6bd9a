"""A synthetic Sun with known truth, written in the real SDO data formats.

Active regions (`sun`), the network (`network`), the regions' warm 211 Å loops (`corona`),
AIA's response, noise and degradation (`instrument`), flares and GOES XRS (`flares`), EVE
MEGS-A lines (`eve`), a run's Sun rendered at any time (`model`), and the streaming writer of
the SDOML v2 stores (`generate`) with the EVE store (`eve_store`), GOES XRS, F10.7 and the
flare list (`indices`) and level-1 FITS files (`fits`).
"""

from sdofm.sources.synthetic.eve import EVE_LINES
from sdofm.sources.synthetic.generate import SyntheticSun, generate

__all__ = ["EVE_LINES", "SyntheticSun", "generate"]
