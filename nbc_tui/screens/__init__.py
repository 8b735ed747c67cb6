"""The wizard's screens, one per module: welcome, image, disk, options, review, progress, done, and the
dialogs. Each is a ``Screen[Result]`` that ends with ``dismiss(value)``; ``None`` means "back"."""
