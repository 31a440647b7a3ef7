"""One module per paper, each a subclass of kdrepro.papers.base.Paper; kdrepro.assemble lists them."""
