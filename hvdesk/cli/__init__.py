"""`hvdesk ...`: the command line, on the same engine as the GUI."""
