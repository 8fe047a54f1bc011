"""Model families: one module each, a variant table plus builders."""

from vit_zoo.models import mixer, swin, vit

#: Every public builder: name -> (family, variant).
BUILDERS = {**vit.BUILDERS, **mixer.BUILDERS, **swin.BUILDERS}
