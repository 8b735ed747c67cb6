"""Components of the full-screen installer, one per module: the disk table, the step list, the log pane, the
status line, the choices (ChoiceButton, ChoiceSet), the masked input, and the modal dialogs (the quit
question, the help, the cancel question, the recovery key, the keyboard); name_filter.py ranks names as typed."""
