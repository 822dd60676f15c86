"""Which joints a policy's action commands (``action.joints`` of a manifest). Its own module so that both the
observation builder (``last_action``'s size) and the action mapper use it without importing each other."""

from __future__ import annotations

from dexstack.policies.errors import PolicyError
from dexstack.robot.description import RobotDescription


def resolve_action_joints(joints: str | tuple[str, ...], description: RobotDescription) -> tuple[str, ...]:
    named = {"all": description.joints, "arm": description.arm_joints, "hand": description.hand_joints}
    if isinstance(joints, str):
        if joints not in named:
            raise PolicyError(f"action.joints '{joints}' is not one of {sorted(named)} or a list of joint names")
        return named[joints]
    unknown = [j for j in joints if j not in description.limits]
    if unknown:
        raise PolicyError(f"action.joints names {unknown}, not joints of robot '{description.profile.name}'")
    if len(set(joints)) != len(joints):
        raise PolicyError("action.joints names a joint twice")
    for part, part_joints in (("arm", description.arm_joints), ("hand", description.hand_joints)):
        given = [j for j in joints if j in part_joints]
        if given and len(given) != len(part_joints):
            missing = [j for j in part_joints if j not in joints]
            raise PolicyError(f"action.joints commands part of the {part}: add {missing} (parts are commanded whole)")
    return tuple(joints)
