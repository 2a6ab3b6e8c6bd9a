"""A synthetic Sun with known truth, written in the real SDO data formats.

Active regions (`sun`), AIA's response, noise and degradation (`instrument`), flares and GOES
XRS (`flares`), EVE MEGS-A lines (`eve`), level-1 FITS files (`fits`), and the streaming writer
of the SDOML v2 stores, event lists, indices and ground truth (`generate`).
"""

from sdofm.sources.synthetic.eve import EVE_LINES
from sdofm.sources.synthetic.generate import SyntheticSun, generate

__all__ = ["EVE_LINES", "SyntheticSun", "generate"]
