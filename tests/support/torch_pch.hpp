// Precompiled for ckpt_torch_tests: the heavy headers every torch test includes.
#pragma once
#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "ckpt/ckpt.hpp"
