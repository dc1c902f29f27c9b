//! vptq-eval
