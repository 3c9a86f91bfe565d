"""The training of tests/torch/resume_worker.cpp, in Python, for the cross-language tests.

  resume CHECKPOINT DATA OUT EPOCHS   continue a checkpoint C++ wrote, to EPOCHS; save the
                                      final model and optimizer state to OUT
  start DIR DATA EPOCHS               train from the initial weights in DATA for EPOCHS
                                      epochs and save DIR/checkpoint_epoch_<EPOCHS>.pth in
                                      the worker's layout, for C++ to resume

Same model, optimizer, schedule, data, batch order and RNG handling as the C++ worker.
Run with /usr/bin/python3 (torch 1.13).
"""
import sys
import warnings

import torch
from torch import nn

warnings.filterwarnings("ignore")
BATCH = 32


def build(data):
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    model.load_state_dict(data["init"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, data, start_epoch, start_batch, epochs):
    x, y, orders = data["x"], data["y"], data["orders"]
    batches = x.shape[0] // BATCH
    model.train()
    for epoch in range(start_epoch, epochs):
        for batch in range(start_batch if epoch == start_epoch else 0, batches):
            index = orders[epoch][batch * BATCH:(batch + 1) * BATCH]
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()


def main():
    torch.set_num_threads(1)
    mode = sys.argv[1]
    if mode == "resume":
        checkpoint, data_file, out, epochs = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        data = torch.load(data_file)
        model, optimizer, scheduler = build(data)
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["cpu"])
        train(model, optimizer, scheduler, data, state["epoch"], state["batch"], epochs)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, out)
    elif mode == "start":
        directory, data_file, epochs = sys.argv[2], sys.argv[3], int(sys.argv[4])
        data = torch.load(data_file)
        model, optimizer, scheduler = build(data)
        torch.manual_seed(7)
        train(model, optimizer, scheduler, data, 0, 0, epochs)
        torch.save({"epoch": epochs, "batch": 0, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": {"cpu": torch.get_rng_state()}},
                   f"{directory}/checkpoint_epoch_{epochs}.pth")
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
