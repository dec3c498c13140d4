"""The experiments' figures: ``figures/<name>.py`` draws what ``blojax.experiments.<name>.plot`` writes
(matplotlib imported inside the functions)."""
