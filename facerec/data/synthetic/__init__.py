"""Procedural synthetic face identities drawn with OpenCV: the project's embedded default data set.

Each identity is a fixed random set of facial parameters (:class:`IdentityParams`: face outline,
eye, brow, nose and mouth geometry, skin, hair and iris tone, hair style, glasses, beard, moles,
freckles, ...), drawn from ``np.random.default_rng([seed, identity])`` so identity ``i`` is the
same however many identities a data set has. Each image of an identity varies the nuisances:
pose (in-plane rotation, scale, shift, a small yaw), expression (smile, open mouth, raised brows,
half-closed eyes), illumination (brightness, contrast, colour cast, gradient), blur, noise, a
random occluding patch, a cluttered background and clothing, and sometimes glasses taken off;
drawn from ``np.random.default_rng([seed, identity, index, 1])``. ``difficulty`` scales all
nuisances (0 gives canonical, frontal, neutral faces on a grey background).

Faces sit where aligned faces sit in the 112x112 ArcFace template (eyes near y=51, x=38 and 73;
nose tip near (56, 72); mouth corners near (41, 92) and (70, 92)); drawing is done at twice the
output resolution and reduced with ``INTER_AREA`` for anti-aliasing. Images are RGB uint8
(size, size, 3), the convention of :mod:`facerec.data.image`.

Modules: :mod:`.render` (:class:`SyntheticFaces`), :mod:`.write` (image folder, contact sheet)
and :mod:`.cli`: ``facerec synth --out DIR --identities N --images-per-identity K [--size 112]``
writes an image-folder tree ``DIR/id_00000/0000.png``.
"""

from facerec.data.synthetic.cli import main
from facerec.data.synthetic.render import IdentityParams, SyntheticFaces
from facerec.data.synthetic.write import write_contact_sheet, write_synthetic_folder

__all__ = [
    "IdentityParams",
    "SyntheticFaces",
    "main",
    "write_contact_sheet",
    "write_synthetic_folder",
]
