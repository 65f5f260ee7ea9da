"""Write init.xyz: the Au(100) capacitor (288 Au, atoms 0–287) with 64 water molecules between the plates.

The waters sit on a 4 × 4 × 4 grid (random orientations) in 13.5 ≤ z ≤ 28.5 Å: a dilute demo, not an
equilibrated liquid (fill the gap at 1 g/cm³ for production). Run: python make_init.py
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from lesmd.electrode.geometry import au100_capacitor, water_between_electrodes

au_numbers, au_positions, cell = au100_capacitor()
w_numbers, w_positions = water_between_electrodes()
atoms = Atoms(numbers=np.concatenate([au_numbers, w_numbers]), positions=np.vstack([au_positions, w_positions]),
              cell=cell, pbc=[True, True, False])
write(Path(__file__).resolve().parent / "init.xyz", atoms)
print(f"init.xyz: {len(au_numbers)} Au + {len(w_numbers) // 3} H2O")
