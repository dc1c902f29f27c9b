//! vptq-model
