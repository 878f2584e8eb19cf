"""Procedural synthetic face identities drawn with OpenCV: the project's embedded default data set.

Identity ``i``'s facial parameters (:class:`IdentityParams`) come from
``np.random.default_rng([seed, i])``, so they do not depend on the size of the set. Each image
varies pose, expression, illumination, blur, noise, occluders, background and clothing, drawn
from ``default_rng([seed, identity, index, 1])`` and scaled by ``difficulty`` (0: canonical
frontal faces on grey). Faces sit where aligned faces sit in the 112x112 ArcFace template;
images are RGB uint8 (size, size, 3), drawn at twice the size and reduced with ``INTER_AREA``.

``facerec synth --out DIR --identities N --images-per-identity K`` (:mod:`.cli`) writes
``DIR/id_00000/0000.png``, ...
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
