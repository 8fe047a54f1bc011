"""Model families: one module each, a variant table plus builders."""

from vit_zoo.models import clip, convmixer, mixer, mvit_v2, pvt_v2, swin, swin_v2, vit, xcit

#: Every public image-classifier builder: name -> (family, variant). CLIP's dual encoders are
#: listed apart (clip.BUILDERS): `vit-zoo predict` and the classifier tests expect classifiers.
BUILDERS = {**vit.BUILDERS, **mixer.BUILDERS, **swin.BUILDERS, **pvt_v2.BUILDERS,
            **swin_v2.BUILDERS, **xcit.BUILDERS, **convmixer.BUILDERS, **mvit_v2.BUILDERS}

__all__ = ["BUILDERS", "clip", "convmixer", "mixer", "mvit_v2", "pvt_v2", "swin", "swin_v2",
           "vit", "xcit"]
