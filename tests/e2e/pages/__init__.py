"""Page objects for the engineer console, one module per page: the console tests speak in their
terms (sign in, search the library, add a fact, resolve), and the selectors live here, once."""
