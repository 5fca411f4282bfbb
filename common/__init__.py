"""The bottom layer every other package may import and that imports none of them: the errors a
command line turns into one line and exit status 2, and the keys of a trial's reports."""
