#include "support/torch_pch.hpp"
