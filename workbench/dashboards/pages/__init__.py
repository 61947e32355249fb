"""One `pn.viewable.Viewer` per dashboard page, each bound to the shared `AppState`."""
