"""ICP (the Inference Control Plane) as a transformers custom generation method.

transformers runs this file for

    model.generate(**inputs, custom_generate=icp.custom_generate_path(), trust_remote_code=True)

(or a copy of this folder: a local path or a Hub repository holding `custom_generate/generate.py`). It only
forwards to `icp.custom_generate_method.generate`, so the code that steers is the installed `icp`
package; see that function for the arguments (`icp=`, `icp_config=`, `icp_card=`) and the output
(with `return_dict_in_generate=True`, an `ICPGenerateOutput` whose `icp_trace` is ICP's trace).

Which transformers versions load it, and when `trust_remote_code` matters (ICP accepts transformers
>=5.0,<6), as `GenerationMixin.load_custom_generate` reads in each release:

- `custom_generate` (a Hub repository or a local folder holding `custom_generate/generate.py`) exists in
  every 5.x release.
- transformers 5.12.0 and later treat a local folder like a Hub repository
  (`resolve_trust_remote_code(..., has_local_code=False, has_remote_code=True)`,
  huggingface/transformers#46483): `trust_remote_code=True` is required; with `trust_remote_code=False`
  generate() raises, and with it unset it asks (or raises where it cannot ask) before running this file.
- transformers 5.0.0 to 5.11.0 run a local folder's `custom_generate/generate.py` *without* asking,
  whatever `trust_remote_code` says (they pass `has_local_code=os.path.exists(path)`, so the check never
  raises for a path that exists). With those releases, pass `custom_generate=` only paths whose code you
  trust, e.g. the folder shipped inside the installed `icp` package (`icp.custom_generate_path()`),
  never a user-supplied or downloaded folder.

Passing `trust_remote_code=True` works on every release; what it trusts is this short file, which imports
the installed `icp`. transformers also checks `custom_generate/requirements.txt` against the installed
packages before running it.
"""

from icp.custom_generate_method import generate as _icp_generate


def generate(model, *args, **kwargs):
    """Runs `model.generate` with ICP as the sampling policy; see `icp.custom_generate_method.generate`.

    Args:
        model (`PreTrainedModel`): the model generating (transformers passes it).
        *args: passed on (e.g. the input ids).
        **kwargs: every argument of the `model.generate(...)` call, plus ICP's own: `icp` (an `icp.ICP`),
            `icp_config` (an `icp.ICPConfig`, a dict of its fields or a saved config's path) and `icp_card`.

    Returns:
        `torch.LongTensor`, or `icp.custom_generate_method.ICPGenerateOutput` with `return_dict_in_generate=True`.
    """
    return _icp_generate(model, *args, **kwargs)
