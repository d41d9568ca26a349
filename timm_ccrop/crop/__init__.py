"""The crop and its views (primitives): boxes, ContrastiveCrop and the crop modes, timm's
transform factory hook, view presets, batched on-device views and their colour ops, and
the quality of the view pairs a box yields."""
