"""The operations people run: install, update, rollback, status and download. Each is a list of steps over a state of
its own, run by the one step driver (:mod:`..engine`); they share the slot steps (:mod:`..steps`) and find an
installed system through :mod:`..installed`."""
