"""Regenerates the bundled HD sample (1280x720, synthetic camera shake): python kd_edge/samples/make_hd_sample.py"""
import numpy as np, kd_edge
from kd_edge.data.dead_leaves import dead_leaves
from kd_edge.data.kernels import motion_kernel, blur
from kd_edge.images import write_image
from skimage import data
rng = np.random.default_rng(20250712)
sharp = dead_leaves(rng, 720, width=1280).astype(np.float32)
# paste two bundled scikit-image photographs so the sample has natural content as well as edges
for img, (y, x) in ((data.astronaut(), (104, 80)), (data.coffee(), (180, 700))):
    img = img[:512, :512].astype(np.float32) / 255.0
    h, w = min(img.shape[0], 720 - y), min(img.shape[1], 1280 - x)
    sharp[y:y + h, x:x + w] = img[:h, :w, :3]
k = motion_kernel(rng, 21)
blurred = np.clip(blur(sharp, k) + rng.normal(0, 0.005, sharp.shape), 0, 1)
write_image("kd_edge/samples/hd_sample_blur.png", blurred)
write_image("kd_edge/samples/hd_sample_sharp.png", sharp)
np.save("kd_edge/samples/hd_sample_kernel.npy", k.astype(np.float32))
from kd_edge.metrics import psnr
print(sharp.shape, psnr(np.round(blurred*255)/255, np.round(sharp*255)/255))
