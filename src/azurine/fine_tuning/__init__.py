"""Fine-tuning: the training file checked, LoRA trained on the CPU, the adapter written for llama.cpp."""
