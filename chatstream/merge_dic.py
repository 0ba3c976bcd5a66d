"""The original ChatStream 0.3.0's module path `chatstream.merge_dic`, kept so code written for it imports unchanged.

`merge_dict(src, dest)`: `src` with the values of `dest` that are not None (`dest` None: a copy of `src`).
"""

from chatstream.facade.generation_params import merge_params

merge_dict = merge_params

__all__ = ["merge_dict"]
