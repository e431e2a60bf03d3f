"""The built-in architecture names and their stages, importable without torch (profile
validation uses them: a freeze that names no stage left training is caught before any data
loads)."""

BUILTIN_STAGES: dict[str, tuple[str, ...]] = {
    "mobilenet_student": (
        "fusion",
        "stem",
        "blocks_1",
        "blocks_2",
        "blocks_3",
        "lstm",
        "classifier",
    ),
    "i3d_teacher": ("fusion", "stem", "mixed_3", "mixed_4", "mixed_5", "lstm", "classifier"),
    "bilstm": ("fusion", "subsample", "lstm", "classifier"),
}
BUILTIN_NAMES = tuple(BUILTIN_STAGES)
