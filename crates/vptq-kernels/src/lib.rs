//! vptq-kernels
