"""The bottom layer every other package may import and that imports none of them: the errors a
command line turns into one line and exit status 2, the keys of a trial's reports and the cell,
the registries' one rule (a name is registered once), file writes that a full disk cannot leave
half done, and how OpenMP threads wait (set before torch loads)."""
