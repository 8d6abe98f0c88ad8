"""Open-Sora-Plan v1.2 references: its scheduler, a random-weight checkpoint writer in the
published layout, and a PyTorch model written from the published architecture
(../shared/OPEN-SORA-PLAN-1.2.md)."""
