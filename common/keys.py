"""Keys shared by the code that writes a trial's reports (trainables) and the code that records
them (study)."""

SUMMARY = "summary"          # marks a trial's last report: its summary, not an epoch
