"""The built-in architecture names, importable without torch (profile validation uses them)."""

BUILTIN_NAMES = ("mobilenet_student", "i3d_teacher", "bilstm")
