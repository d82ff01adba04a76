"""Your own Flax model and optax loop, trained with NG-EBM instead of cross-entropy."""
import flax.linen as nn
import jax
import numpy as np
import optax

import ngebm_jax as ng
from ngebm_jax.data.procedural import embedded


class CNN(nn.Module):  # your model; examples must not interact (no batch norm)

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(16, (3, 3), strides=2)(x), 0.2)
    x = nn.leaky_relu(nn.Conv(32, (3, 3), strides=2)(x), 0.2)
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


@jax.jit
def train_step(params, opt_state, x, y):
  # Was: loss_fn = lambda p: ng.cross_entropy_loss(model.apply, p, x, y)
  loss_fn = lambda p: ng.ngebm_loss(model.apply, p, x, y)  # CE + beta L_var + gamma L_grad
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = optimizer.update(grads, opt_state)
  return optax.apply_updates(params, updates), opt_state, loss


data = embedded.load(num_train=1024, num_validation=0, num_test=0)["train"]
images, labels = data["image"] / np.float32(127.5) - 1, data["label"]  # pixels in [-1, 1]
model, optimizer = CNN(), optax.adam(3e-3)
params = model.init(jax.random.key(0), images[:1])
opt_state, rng, losses = optimizer.init(params), np.random.default_rng(0), []
for step in range(100):
  batch = rng.choice(len(images), size=64, replace=False)
  params, opt_state, loss = train_step(params, opt_state, images[batch], labels[batch])
  losses.append(float(loss))
  if step % 20 == 0 or step == 99:
    print(f"step {step:3d}  NG-EBM loss {loss:.3f}")
