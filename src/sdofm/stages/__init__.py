"""The stages the `sdofm` command runs (`sdofm.cli` parses the arguments): `data` and `models`."""
