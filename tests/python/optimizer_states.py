"""Writes, for each optimizer ckpt supports, what Python's torch.optim produces, so the C++
test can load it into the libtorch optimizer and check that the next step agrees.

Usage: /usr/bin/python3 optimizer_states.py OUT_DIR
For each NAME in sgd, adam, adamw, rmsprop, adagrad, writes OUT_DIR/NAME.pth:
  {"model": initial state_dict, "inputs": [x0, x1, x2, x3], "optimizer": state_dict()
   after steps on x0..x2, "after": state_dict() of the model after one more step on x3}
"""
import copy
import sys
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99)),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01),
}


def step(model, optimizer, x):
    loss = model(x).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    for name, make in OPTIMIZERS.items():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        inputs = [torch.randn(16, 4) for _ in range(4)]
        optimizer = make(model.parameters())
        for x in inputs[:3]:
            step(model, optimizer, x)
        # state_dict() returns the live tensors, which the next step mutates: copy.
        saved = copy.deepcopy(optimizer.state_dict())
        current = {k: v.clone() for k, v in model.state_dict().items()}
        step(model, optimizer, inputs[3])
        torch.save({"model": current, "initial": initial, "inputs": inputs, "optimizer": saved,
                    "after": model.state_dict()}, f"{out}/{name}.pth")


if __name__ == "__main__":
    main()
