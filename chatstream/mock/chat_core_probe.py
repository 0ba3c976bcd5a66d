"""The original ChatStream 0.3.0's module path `chatstream.mock.chat_core_probe`, kept so code written for it imports unchanged.

The original's `ChatCoreProbe` recorded inside its generation loop; recording here is an engine hook,
`Recorder`, turned on by `ChatStream(probe_mode_enabled=True)` (or `record_to=DIR`).
"""

from chatstream.mock.recorder import Recorder, attach_recorder
from chatstream.mock.recording import default_recording_dir

__all__ = ["Recorder", "attach_recorder", "default_recording_dir"]
