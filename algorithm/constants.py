"""Preprocessing constants of the paper (Section IV.D); nothing else repeats them."""

HU_MIN = -1200.0  # clamp window lower bound (HU)
HU_MAX = 400.0  # clamp window upper bound (HU)
INPLANE_SIZE = 256  # preprocessed grid: 256 x 256 in plane, z resampled to isotropic spacing
STAGE1_DOWNSAMPLE = 2  # stage I reads the preprocessed scan at half resolution
STAGE2_TRAIN_PATCH_IN = 116  # stage II training patch (valid convs): 116^3 in ...
STAGE2_TRAIN_PATCH_OUT = 28  # ... 28^3 out
MAX_TILE_IN_VOXELS = 144**3  # default budget of one planned stage-II tile's input (about 1.7 GB fp32)
# Air and aerated lung (even dense or fibrotic) lie below this, soft tissue above: the one cut
# used to find air outside the body, the body itself and lung-like voxels.
AIR_LUNG_CUT_HU = -400.0
PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # network arithmetic (algorithm.inference.compute_dtype)
FISSURE_MODES = ("fit", "network", "global")  # lobe borders: refitted to the scan (algorithm.fissure_fit), the network's, or searched globally (algorithm.fissure_search)
DEFAULT_FISSURES = "fit"  # chosen by the phantom and real-scan measurements (docs/results.md, Fissure fit)
